"""Regular expressions from requests (server name filters and the like).

Nova treats ``?name=`` and its siblings as regular expressions matched
anywhere in the value. Python's ``re`` backtracks: ``^(a+)+$`` against
``'a' * 30 + '!'`` takes seconds to forever, holding the GIL and so every
other request of the API process, and some patterns make the parser itself
fail (``a{4294967296}`` overflows, deeply nested groups recurse too deep).
RE2 matches in time linear in the input and refuses patterns too large for
its memory budget, so a filter costs at most (rows x value length) steps.
RE2 has no backreferences or lookaround; such patterns are refused with 400.
"""

import functools
import re

import re2

# A name is at most 255 characters; a pattern several times that long is
# not a filter anybody means.
MAX_PATTERN_LENGTH = 1024
# RE2's memory budget for one compiled pattern (its default is 8 MiB); a
# pattern over it fails to compile instead of growing.
MAX_MEMORY = 2 << 20
# RE2 takes counted repetitions up to {1000} and reads a larger count such as
# a{4294967296} as literal text, where Python (and the user) mean a
# repetition: such counts are refused instead of silently matching text.
MAX_REPEAT = 1000
_COUNTED = re.compile(r"(?<!\\)\{([0-9]+)(?:,([0-9]*))?\}")


def _options():
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    # A refused pattern is answered with 400; RE2 must not also print it to
    # the API's stderr.
    options.log_errors = False
    return options


_OPTIONS = _options()


class InvalidPattern(ValueError):
    """A pattern RE2 will not run; the message says what to change."""


@functools.lru_cache(maxsize=256)
def compile_filter(pattern):
    """The compiled RE2 pattern, or :class:`InvalidPattern`."""
    if not isinstance(pattern, str):
        raise InvalidPattern(f"a regular expression must be a string, not {pattern!r}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(f"the regular expression is {len(pattern)} characters long; "
                             f"use at most {MAX_PATTERN_LENGTH}")
    for match in _COUNTED.finditer(pattern):
        if any(n and (len(n) > 4 or int(n) > MAX_REPEAT) for n in match.groups()):
            raise InvalidPattern(f"the repetition {match.group(0)[:20]} is too large; "
                                 f"counts may be at most {MAX_REPEAT}")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and \
            isinstance(e.args[0], bytes) else str(e)
        if len(reason) > 200:  # RE2 quotes the pattern, which may be long
            reason = reason[:200] + "..."
        raise InvalidPattern(
            f"{reason} (filters use RE2 syntax: no backreferences or lookaround, "
            "repetitions up to {1000})") from None
    except Exception as e:  # noqa: BLE001 - whatever the binding raises is a refusal
        raise InvalidPattern(f"{pattern[:50]!r} is not a usable regular expression: "
                             f"{e.__class__.__name__}") from None


def search(compiled, value):
    """Nova's match-anywhere semantics (``re.search``), None counting as ''."""
    return compiled.search("" if value is None else str(value)) is not None
