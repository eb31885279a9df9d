"""Raw-SQL schema migrations for Django: timestamped ``.sql`` files with ``-- UP`` / ``-- DOWN``."""

__version__ = "0.1.0"
