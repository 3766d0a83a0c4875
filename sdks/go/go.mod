module github.com/tally-telemetry/tally/sdks/go

go 1.21
