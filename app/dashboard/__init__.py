"""The publisher dashboard, served by the app under ``/dashboard``."""
