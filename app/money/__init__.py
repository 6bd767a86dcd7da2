"""Commissions and money: pure rules (``periods``, ``plan``, ``commission``) and, beside
them, their storage (``plans_store``, ``ledger``, ``closing``, ``earnings``)."""
