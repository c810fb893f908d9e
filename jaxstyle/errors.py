"""The one exception type the command line turns into a one-line message."""


class JaxstyleError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The command line prints ``jaxstyle: <message>`` and exits with status 2;
    no traceback is shown. Messages name the file and the problem.
    """
