"""Caps on clicks, orders and commission (docs/commissions.md, "Caps")."""
