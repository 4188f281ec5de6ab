"""Notifications: the transactional outbox, its dispatcher (subscribe message → customer-service
message → inbox), message templates, subscribe-message grants, the acceptance journal and the
in-app inbox. Domains write outbox items; only this package sends them."""
