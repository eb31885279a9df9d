"""The exceptions users see: something they can fix, said in one line; and SIGTERM as an interrupt."""


class SqlMigrateError(Exception):
    """A problem with the files, the history or the database that the user has to fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt``: psycopg then cancels the running
    query and the migration's transaction is rolled back the same way."""
