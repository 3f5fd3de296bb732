"""The Certwright version shown in About and the API."""

__version__ = "0.1.0"
