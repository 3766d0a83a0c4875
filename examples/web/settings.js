// Where this example sends its events. Replace the key with the last line printed by
// `tally keys create --db collector.db --app lessons --role ingest`.
export default {
  endpoint: "http://127.0.0.1:8080",
  key: "tly_ingest_000000000000_00000000000000000000000000000000",
};
