"""Entry point of the ``godwit`` admin CLI."""

import argparse
import logging
import os
import sys
from importlib import metadata

from cliff.app import App
from cliff.commandmanager import CommandManager

from api.client import common, http


def _version():
    try:
        return metadata.version('godwit')
    except metadata.PackageNotFoundError:
        return 'unknown'


class GodwitApp(App):
    # cliff derives the name from sys.argv[0], which is wrong under
    # ``python -m`` or when main() is called in-process.
    NAME = 'godwit'
    LOG = logging.getLogger(NAME)

    def __init__(self, stdout=None, stderr=None):
        super().__init__(
            description='Admin client for the Godwit compute API',
            version=_version(),
            command_manager=CommandManager('godwit.api.commands'),
            stdout=stdout,
            stderr=stderr,
            deferred_help=True,
        )
        self.client = None

    def build_option_parser(self, description, version, argparse_kwargs=None):
        argparse_kwargs = {'prog': self.NAME, 'epilog': common.EXIT_CODES_HELP,
                           # Keep the exit code table's lines as written.
                           'formatter_class': argparse.RawDescriptionHelpFormatter,
                           **(argparse_kwargs or {})}
        parser = super().build_option_parser(description, version, argparse_kwargs)
        env = os.environ.get
        parser.add_argument(
            '--os-endpoint', metavar='URL',
            default=env('GODWIT_ENDPOINT', http.DEFAULT_ENDPOINT),
            help='Compute API endpoint (env GODWIT_ENDPOINT, default %(default)s)')
        parser.add_argument(
            '--os-user', metavar='USER', default=env('GODWIT_USER', 'admin'),
            help='User id sent to noauth2 (env GODWIT_USER, default %(default)s)')
        parser.add_argument(
            '--os-project', metavar='PROJECT', default=env('GODWIT_PROJECT', 'admin'),
            help='Project id sent to noauth2 (env GODWIT_PROJECT, default %(default)s)')
        parser.add_argument(
            '--os-compute-api-version', metavar='VERSION',
            default=env('GODWIT_COMPUTE_API_VERSION', http.DEFAULT_API_VERSION),
            help='Compute API microversion (env GODWIT_COMPUTE_API_VERSION, '
                 'default %(default)s)')
        return parser

    def clean_up(self, cmd, result, err):
        # Close the keep-alive connection now rather than at garbage collection:
        # an in-process run (tests) should not leave it open on the API server.
        if self.client is not None:
            self.client.session.close()

    def initialize_app(self, argv):
        o = self.options
        self.client = http.HTTPClient(o.os_endpoint, o.os_user, o.os_project,
                                      o.os_compute_api_version)


def main(argv=None, stdout=None, stderr=None):
    """Run the CLI; the exit code. ``stdout``/``stderr``: streams other than
    sys's, for callers that run it in-process next to other output."""
    if argv is None:
        argv = sys.argv[1:]
    # cliff attaches a console handler to the root logger on every run; put the
    # root logger back afterwards so repeated in-process runs (tests) don't pile
    # up handlers that still point at old streams.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return GodwitApp(stdout=stdout, stderr=stderr).run(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


if __name__ == '__main__':
    sys.exit(main())
