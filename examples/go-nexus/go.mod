module github.com/tally-telemetry/tally/examples/go-nexus

go 1.21

require github.com/tally-telemetry/tally/sdks/go v0.0.0

replace github.com/tally-telemetry/tally/sdks/go => ../../sdks/go
