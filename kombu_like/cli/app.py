"""The ``kombu-like`` click group and the global options every command also accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import messages, queues, tools
from .session import DEFAULT_URL, ENV_URL, LOG_LEVELS, _option_value, _pairs, _Session

if TYPE_CHECKING:
    import click


def build_app() -> click.Group:
    """Build the ``kombu-like`` click group (needs the ``cli`` extra)."""
    import click

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option(
        "--url",
        envvar=ENV_URL,
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        help=f"Broker URL (also ${ENV_URL}); the default is kombu_like.db in the working directory.",
    )
    @click.option(
        "-o",
        "--transport-option",
        "transport_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Transport option (repeatable); values are read as JSON when they parse.",
    )
    @click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=3,
        show_default=True,
        help="Connection retries before giving up.",
    )
    @click.option("-q", "--quiet", is_flag=True, help="Print only data and errors (no progress or summaries).")
    @click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=None,
        help="Log records of this level and above to stderr (default: warning; error with --quiet).",
    )
    @click.version_option(package_name="kombu_like", prog_name="kombu-like")
    @click.pass_context
    def app(
        ctx: click.Context,
        url: str,
        transport_options: tuple[str, ...],
        retries: int,
        quiet: bool,
        log_level: str | None,
    ) -> None:
        """Publish, consume and manage queues on any kombu_like broker.

        The global options (--url, -o, --retries, --quiet, --log-level) may also be given
        after the command; there they win over the ones before it.
        """
        options = {k: _option_value(v) for k, v in _pairs(transport_options, "--transport-option").items()}
        session = _Session(url, options, retries, quiet, log_level.lower() if log_level else None)
        ctx.obj = session
        ctx.call_on_close(session.close)

    def _later(apply: Callable[[_Session, Any], None]) -> Callable[[click.Context, click.Parameter, Any], None]:
        def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
            if value is None or value == () or value is False:
                return  # not given after the command: the value before it stands
            session = ctx.find_object(_Session)
            if session is not None:
                apply(session, value)

        return callback

    def _set_options(session: _Session, values: tuple[str, ...]) -> None:
        session.options.update({k: _option_value(v) for k, v in _pairs(values, "--transport-option").items()})

    def _set_quiet(session: _Session, value: bool) -> None:
        session.quiet = True
        session.configure_logging()

    def _set_log_level(session: _Session, value: str) -> None:
        session.log_level = value.lower()
        session.configure_logging()

    def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
        """Accept the group's options after the command name too (``kombu-like size q --url ...``)."""
        later = [
            click.option(
                "--url",
                metavar="URL",
                default=None,
                expose_value=False,
                help="Broker URL.",
                callback=_later(lambda session, value: setattr(session, "url", value)),
            ),
            click.option(
                "-o",
                "--transport-option",
                multiple=True,
                metavar="KEY=VALUE",
                expose_value=False,
                help="Transport option (repeatable).",
                callback=_later(_set_options),
            ),
            click.option(
                "--retries",
                type=click.IntRange(min=0),
                default=None,
                expose_value=False,
                help="Connection retries before giving up.",
                callback=_later(lambda session, value: setattr(session, "retries", value)),
            ),
            click.option(
                "--quiet",
                is_flag=True,
                default=False,
                expose_value=False,
                help="Print only data and errors.",
                callback=_later(_set_quiet),
            ),
            click.option(
                "--log-level",
                type=click.Choice(LOG_LEVELS, case_sensitive=False),
                default=None,
                expose_value=False,
                help="Log level on stderr.",
                callback=_later(_set_log_level),
            ),
        ]
        for option in reversed(later):
            command = option(command)
        return command

    for register in (messages.register, queues.register, tools.register):
        register(app, global_options)
    return app
