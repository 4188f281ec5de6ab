"""The conversation: declarative rules pick a handler for each message or event (router, rules),
the dispatcher applies them within WeChat's 5-second budget, and one module per kind of reply
(FAQ, bookings, settlements, menus and 人工) answers. Sits above the domains and ``bot.notify``."""
