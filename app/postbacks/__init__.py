"""Outbound postbacks and webhooks: endpoints, macros, signatures, the outbox
(docs/postbacks.md)."""
