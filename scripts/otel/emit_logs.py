"""Emits log records through the real OpenTelemetry Python SDK to an OTLP/HTTP endpoint.

The tally-cli test `otlp::python_sdk_log_records_arrive_as_events_once` runs this with
the virtualenv that .ci/run makes from requirements.txt, against a real `tally serve`:

- COUNT records through Python's `logging` and the SDK's LoggingHandler, each naming its
  event in `extra` (`event.name`, `session.id`, `tally.*`), with a message and a source
  location that name a private path (the collector must not store either);
- one record through the Logs API with `event_name` at a fixed time (`--fixed-time`), so
  that running the script twice (same `--instance`) sends the same record twice;
- one plain log line with no event name, which the collector refuses.

It exits non-zero when any export failed, and prints how many batches were exported.
"""

import argparse
import logging
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource


class RecordingExporter(OTLPLogExporter):
    """The SDK's own exporter, remembering each export's result."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.results = []

    def export(self, batch):
        result = super().export(batch)
        self.results.append(result)
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True, help="http://HOST:PORT/v1/logs")
    parser.add_argument("--key", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--instance", required=True, help="service.instance.id: the install")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--fixed-time", type=int, required=True, help="nanoseconds since the epoch")
    args = parser.parse_args()

    exporter = RecordingExporter(
        endpoint=args.endpoint,
        headers={"Authorization": f"Bearer {args.key}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    resource = Resource.create(
        {
            "service.name": args.app,
            "service.version": args.version,
            # Stable across runs, as an install is: otherwise the SDK makes one per process.
            "service.instance.id": args.instance,
        }
    )
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))

    log = logging.getLogger("otel-emit")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    for attempt in range(args.count):
        log.info(
            "opened /home/alice/private-notes.txt",
            extra={
                "event.name": "command.executed",
                "session.id": args.session,
                "tally.command": "note open",
                "tally.duration_ms": 40 + attempt,
                "tally.success": True,
                "attempt": attempt,
            },
        )
    log.info("a plain log line that names no event")

    provider.get_logger("otel-emit.api").emit(
        timestamp=args.fixed_time,
        event_name="workspace.created",
        body="created /home/alice/workspace",
        attributes={"session.id": args.session, "template": "rust"},
    )
    provider.shutdown()

    failed = [result for result in exporter.results if result != LogRecordExportResult.SUCCESS]
    print(f"exports: {len(exporter.results)}, failed: {len(failed)}")
    return 1 if failed or not exporter.results else 0


if __name__ == "__main__":
    sys.exit(main())
