"""The one exception type users see: something they can fix, said in one line."""


class SqlMigrateError(Exception):
    """A problem with the files, the history or the database that the user has to fix."""
