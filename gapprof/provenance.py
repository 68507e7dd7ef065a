"""How a result was made: the command line as typed, kept in every trace and results file."""

import shlex
import sys


def invocation() -> str:
    """The command line as typed, for the records that results and traces keep of how they were made."""
    return shlex.join(["gapprof", *sys.argv[1:]])
