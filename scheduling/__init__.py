"""Booking domain (catalogue, calendars, slots, bookings) and the periodic jobs."""
