"""cardtally: card-present payments where an interrupted swipe never costs anyone money."""

__version__ = "0.1.0"
