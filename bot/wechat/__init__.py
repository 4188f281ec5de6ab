"""The WeChat platform: callback crypto and parsing, deduplication of retries, the API client (stable
tokens, subscribe and customer-service messages), template field rules, users, the CLI and the chat
simulator. Knows nothing of bookings, settlements or the FAQ."""
