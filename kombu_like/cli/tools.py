"""``bench`` and ``demo``: commands that exercise a broker."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..utils.url import maybe_sanitize_url
from .output import mask
from .session import EXIT_USAGE, CLIError, _Session

if TYPE_CHECKING:
    import click

#: ``bench --vs NAME`` -> the library that runs beside the measured API
COMPARED = {"kombu": "kombu", "sync": "kombu_like", "async": "kombu_like.aio", "aio-pika": "aio-pika"}


def register(app: click.Group, global_options: Callable[..., Any]) -> None:
    """Add ``bench``, ``demo`` to ``app``."""
    import click

    @app.command()
    @global_options
    @click.argument("bench_url", metavar="[URL]", required=False)
    @click.option("-n", "--messages", type=click.IntRange(min=1), default=10000, show_default=True)
    @click.option("--roundtrips", type=click.IntRange(min=1), default=1000, show_default=True)
    @click.option("--prefetch", type=click.IntRange(min=1), default=200, show_default=True)
    @click.option(
        "--api",
        type=click.Choice(["sync", "async"]),
        default="sync",
        show_default=True,
        help="Which kombu_like API to measure: the blocking one or kombu_like.aio.",
    )
    @click.option(
        "--vs",
        type=click.Choice(list(COMPARED)),
        multiple=True,
        help="Also run this on the same URL (repeatable): Kombu, the other kombu_like API, aio-pika (amqp://).",
    )
    @click.option(
        "--confirms",
        is_flag=True,
        help="Publisher confirms on every library (confirm_publish=True; aio-pika: publisher_confirms=True).",
    )
    @click.option(
        "--inflight",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Publishes awaited together on the asyncio libraries (the blocking ones publish one at a time).",
    )
    @click.option("--no-batch", is_flag=True, help="Skip the Producer.batch() run.")
    @click.option("--raw", is_flag=True, help="Also run the plain amqp client (amqp:// URLs).")
    @click.option(
        "--rounds",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Run the libraries in turn this many times and keep each one's best figures.",
    )
    @click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
    @click.pass_obj
    def bench(
        session: _Session,
        bench_url: str | None,
        messages: int,
        roundtrips: int,
        prefetch: int,
        api: str,
        vs: tuple[str, ...],
        confirms: bool,
        inflight: int,
        no_batch: bool,
        raw: bool,
        rounds: int,
        progress: bool | None,
    ) -> None:
        """Benchmark the broker at URL (default: --url) with kombu_like, and Kombu beside it.

        Prints messages per second, CPU seconds per 10,000 messages and round-trip
        latency for each library, side by side with the ratio.
        """
        import importlib

        from ..bench import format_table, run_raw_amqp
        from ..bench_async import LIBRARIES, run_library

        url = bench_url or session.url
        safe_url = mask(str(maybe_sanitize_url(url)), url)
        scheme = url.split("://")[0]
        if raw and scheme not in ("amqp", "pyamqp"):
            raise CLIError("--raw needs an amqp:// URL", EXIT_USAGE)
        if "aio-pika" in vs and scheme not in ("amqp", "pyamqp"):
            raise CLIError("--vs aio-pika needs an amqp:// URL", EXIT_USAGE)
        options = dict(session.options)
        if confirms:
            options["confirm_publish"] = True
        libraries = ["kombu_like.aio" if api == "async" else "kombu_like"]
        for name in vs:
            library = COMPARED[name]
            if library in libraries:
                continue
            try:
                importlib.import_module(LIBRARIES[library])
                libraries.append(library)
            except ImportError:
                click.echo(f"kombu-like: {library} is not installed; running without it", err=True)
        phases = 3 if no_batch else 4
        show = (sys.stderr.isatty() and not session.quiet) if progress is None else progress
        best: dict[str, Any] = {}
        failures: list[str] = []
        with click.progressbar(
            length=phases * len(libraries) * rounds,
            label="bench",
            file=sys.stderr,
            hidden=not show,
            item_show_func=lambda item: item,
        ) as bar:
            for round_number in range(1, rounds + 1):
                label = f" (round {round_number} of {rounds})" if rounds > 1 else ""
                for library in list(libraries):
                    if not show:
                        session.info(f"running {library} on {safe_url}{label} ...")

                    def step(phase: str, library: str = library, label: str = label) -> None:
                        bar.update(1, f"{library}{label}: {phase}")

                    try:
                        result = run_library(
                            library,
                            url,
                            messages=messages,
                            roundtrips=roundtrips,
                            prefetch=prefetch,
                            batch=not no_batch,
                            transport_options=options,
                            progress=step,
                            inflight=inflight,
                        )
                    except NotImplementedError as exc:
                        # a transport the asyncio API has no driver for yet
                        unsupported = mask(f"{library} cannot run on {safe_url}: {exc}", url)
                        if library == libraries[0]:
                            raise CLIError(unsupported, EXIT_USAGE) from None
                        failures.append(unsupported)
                        libraries.remove(library)
                        continue
                    except Exception as exc:
                        if library.startswith("kombu_like"):
                            raise
                        # Kombu may not know this URL (it has no sqlite://): keep our figures
                        problem = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                        failures.append(mask(f"{library} could not run on {safe_url}: {problem}", url))
                        libraries.remove(library)
                        continue
                    best[library] = best[library].best_of(result) if library in best else result
        results = [best[library] for library in libraries]
        if raw:
            session.info(f"running the plain amqp client on {safe_url} ...")
            results.append(run_raw_amqp(url, messages, roundtrips, prefetch))
        for failure in failures:
            click.echo(f"kombu-like: {failure}", err=True)
        click.echo(format_table(results))

    @app.command()
    @global_options
    @click.pass_obj
    def demo(session: _Session) -> int:
        """Publish three messages and consume them again, printing what went through."""
        from ..demo import run

        # connected (within --retries) before anything says so
        return run(session.connect())
