"""What every ``godwit`` command shares: exit codes, URL and output helpers, waiting."""

import time
from urllib.parse import quote

from api.client.http import ClientError

# Seconds between polls of --wait; module level so tests can shrink it.
POLL_INTERVAL = 0.2

# Exit codes scripts can rely on (also in `godwit --help`, EXIT_CODES_HELP).
EXIT_OK = 0
EXIT_API_ERROR = 1      # the API refused the request or could not be reached
EXIT_USAGE = 2          # argparse's own code for a command line it cannot parse
EXIT_ENDED_BADLY = 3    # --wait: the operation ended, unsuccessfully
EXIT_TIMED_OUT = 4      # --wait: gave up after --timeout; the operation may go on

EXIT_CODES_HELP = """\
exit codes:
  0  success (with --wait: the operation ended as asked)
  1  the API refused the request or could not be reached; nothing was started
     (one line on stderr says why and what to do)
  2  usage error: the command line could not be parsed
  3  --wait: the operation ended unsuccessfully (a move failed, was cancelled
     or is in error; the server went to ERROR); stderr says why
  4  --wait: gave up after --timeout; the operation may still be under way
  130  interrupted (Ctrl-C); an operation already asked for goes on
"""


class WaitTimedOut(ClientError):
    """--timeout passed before the operation ended (exit code 4)."""

    exit_code = EXIT_TIMED_OUT


def seg(value):
    """Quote one path segment so an odd id cannot change the URL's shape."""
    return quote(str(value), safe='')


def params(**kwargs):
    """Query parameters without the options that were not given."""
    return {k: v for k, v in kwargs.items() if v is not None}


def pick(item, fields):
    return tuple(item.get(f) for f in fields)


def poll(fetch, done, timeout, what, hint=''):
    """Call ``fetch`` until ``done(result)``; give up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f'timed out after {timeout:g}s waiting for {what}{hint}')
        time.sleep(POLL_INTERVAL)


def add_wait(parser, what):
    parser.add_argument('--wait', action='store_true',
                        help=f'Wait until {what} (exit code 3 if it ends unsuccessfully)')
    parser.add_argument('--timeout', type=float, default=60, metavar='SECONDS',
                        help='How long --wait waits (default %(default)s; exit code 4 '
                             'when it runs out)')


class _KeepLines:
    """Help formatter mix-in: descriptions and epilogs keep their line breaks
    (cliff's formatter would run the exit code table into one paragraph)."""

    def _fill_text(self, text, width, indent):
        return ''.join(indent + line for line in text.splitlines(keepends=True))


class ApiCommand:
    """Mixin for every command: API failures become one line and an exit code.

    Commands that finish but must still report failure (a --wait that ends in
    ERROR) set ``exit_code`` after producing their output.
    """

    exit_code = EXIT_OK
    _epilog = EXIT_CODES_HELP

    @property
    def client(self):
        return self.app.client

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.formatter_class = type('GodwitHelpFormatter',
                                      (_KeepLines, parser.formatter_class), {})
        return parser

    def run(self, parsed_args):
        try:
            return super().run(parsed_args) or self.exit_code
        except ClientError as exc:
            self.app.stderr.write(f'{exc}\n')
            return getattr(exc, 'exit_code', EXIT_API_ERROR)


class NoOutputUnlessWaited:
    """For ShowOne commands that show something only with --wait."""

    def produce_output(self, parsed_args, column_names, data):
        if column_names:
            return super().produce_output(parsed_args, column_names, data)
        return 0
