/*
 * Records events through the C ABI as a C host would, and checks every error path:
 * NULL pointers, invalid UTF-8, bad JSON, unknown handles and command ids, and use
 * from several threads at once. Run by tests/c_abi.rs (compiled with cc, under
 * valgrind), which then checks the store the events landed in.
 *
 * Usage: record STORE_DIR CANARY
 * Prints "ok" and exits 0 when every check passed; otherwise names the failed check.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

static int failures = 0;

#define EXPECT(call, status)                                                              \
  do {                                                                                    \
    TallyStatus got_ = (call);                                                            \
    if (got_ != (status)) {                                                               \
      fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", __FILE__, __LINE__,    \
              #call, (int)got_, (int)(status), tally_last_error());                       \
      failures++;                                                                         \
    }                                                                                     \
  } while (0)

#define EXPECT_ERROR_MENTIONS(text)                                                       \
  do {                                                                                    \
    if (strstr(tally_last_error(), (text)) == NULL) {                                     \
      fprintf(stderr, "%s:%d: last error \"%s\" does not mention \"%s\"\n", __FILE__,     \
              __LINE__, tally_last_error(), (text));                                      \
      failures++;                                                                         \
    }                                                                                     \
  } while (0)

#define THREADS 4
#define EVENTS_PER_THREAD 25

static uint64_t shared_handle;

static void *record_from_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < EVENTS_PER_THREAD; i++) {
    EXPECT(tally_record(shared_handle, "task", "task_completed",
                        "{\"command\": \"task done\", \"target_type\": \"task\", \"target\": \"t\"}"),
           TALLY_STATUS_OK);
  }
  return NULL;
}

static void check_bad_arguments(uint64_t handle) {
  uint64_t out = 0;
  char bad_utf8[] = {'t', 'a', 's', 'k', (char)0xff, 0};

  EXPECT(tally_open(NULL, "1.0.0", NULL, &out), TALLY_STATUS_NULL_ARGUMENT);
  EXPECT_ERROR_MENTIONS("app: must not be NULL");
  EXPECT(tally_open("ctest", "1.0.0", NULL, NULL), TALLY_STATUS_NULL_ARGUMENT);
  EXPECT(tally_open("Not An App", "1.0.0", NULL, &out), TALLY_STATUS_INVALID_ARGUMENT);
  EXPECT_ERROR_MENTIONS("app: must be 1 to");
  EXPECT(tally_open("ctest", "1.0.0", "{\"dir\": ", &out), TALLY_STATUS_INVALID_ARGUMENT);
  EXPECT(tally_open("ctest", "1.0.0", "{\"colour\": 1}", &out), TALLY_STATUS_INVALID_ARGUMENT);
  EXPECT_ERROR_MENTIONS("unknown field `colour`");

  EXPECT(tally_record(handle, NULL, "x", NULL), TALLY_STATUS_NULL_ARGUMENT);
  EXPECT(tally_record(handle, bad_utf8, "x", NULL), TALLY_STATUS_INVALID_UTF8);
  EXPECT_ERROR_MENTIONS("type: must be valid UTF-8");
  EXPECT(tally_record(handle, "task", "task_completed", "{not json"), TALLY_STATUS_INVALID_EVENT);
  EXPECT(tally_record(handle, "task", "task_completed", "{\"argv\": \"--token s\"}"),
         TALLY_STATUS_INVALID_EVENT);
  EXPECT_ERROR_MENTIONS("unknown field `argv`");
  EXPECT(tally_record(handle, "task", "task_completed", "{\"props\": {\"a\": {\"b\": 1}}}"),
         TALLY_STATUS_INVALID_EVENT);
  EXPECT(tally_record(handle, "Task", "task_completed", NULL), TALLY_STATUS_INVALID_EVENT);
  EXPECT_ERROR_MENTIONS("type: must be 1 to");
  EXPECT(tally_record(987654321, "task", "task_completed", NULL), TALLY_STATUS_UNKNOWN_HANDLE);

  EXPECT(tally_command_start(handle, "deploy", NULL), TALLY_STATUS_NULL_ARGUMENT);
  EXPECT(tally_command_start(handle, NULL, &out), TALLY_STATUS_NULL_ARGUMENT);
  EXPECT(tally_command_success(handle, 424242), TALLY_STATUS_UNKNOWN_HANDLE);
  EXPECT(tally_command_failure(handle, 424242, "io", NULL), TALLY_STATUS_UNKNOWN_HANDLE);
  EXPECT(tally_enabled(handle, NULL), TALLY_STATUS_NULL_ARGUMENT);
  EXPECT(tally_close(987654321), TALLY_STATUS_UNKNOWN_HANDLE);
}

static void record_commands(uint64_t handle, const char *canary) {
  uint64_t command = 0;
  EXPECT(tally_command_start(handle, "workspace create", &command), TALLY_STATUS_OK);
  EXPECT(tally_command_workspace(handle, command, canary), TALLY_STATUS_OK);
  EXPECT(tally_command_success(handle, command), TALLY_STATUS_OK);
  EXPECT(tally_command_success(handle, command), TALLY_STATUS_UNKNOWN_HANDLE);

  EXPECT(tally_command_start(handle, "task done", &command), TALLY_STATUS_OK);
  EXPECT(tally_command_target(handle, command, "task", canary), TALLY_STATUS_OK);
  /* A bad category is refused and the command keeps running. */
  EXPECT(tally_command_failure(handle, command, "Not Found", NULL), TALLY_STATUS_INVALID_EVENT);
  EXPECT(tally_command_failure(handle, command, "not_found", "no such task"), TALLY_STATUS_OK);

  /* Left running: recorded as abandoned at close. */
  EXPECT(tally_command_start(handle, "task list", &command), TALLY_STATUS_OK);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s STORE_DIR CANARY\n", argv[0]);
    return 2;
  }
  if (tally_abi_version() != TALLY_ABI_VERSION) {
    fprintf(stderr, "ABI version %u, header says %u\n", tally_abi_version(), TALLY_ABI_VERSION);
    return 1;
  }
  const char *canary = argv[2];
  char options[4096];
  snprintf(options, sizeof options,
           "{\"dir\": \"%s\", \"first_run_notice\": false, \"shutdown_timeout_ms\": 5000}", argv[1]);

  uint64_t handle = 0;
  EXPECT(tally_open("ctest", "3.1.4", options, &handle), TALLY_STATUS_OK);
  bool enabled = false;
  EXPECT(tally_enabled(handle, &enabled), TALLY_STATUS_OK);
  if (!enabled) {
    fprintf(stderr, "telemetry is off; the test needs it on\n");
    return 1;
  }

  char fields[1024];
  snprintf(fields, sizeof fields,
           "{\"command\": \"workspace create\", \"workspace\": \"%s\", \"duration_ms\": 7, "
           "\"success\": true, \"props\": {\"template\": \"rust\", \"files_count\": 3}}",
           canary);
  EXPECT(tally_record(handle, "workspace", "workspace_created", fields), TALLY_STATUS_OK);
  record_commands(handle, canary);
  check_bad_arguments(handle);

  shared_handle = handle;
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) {
    pthread_create(&threads[i], NULL, record_from_thread, NULL);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(threads[i], NULL);
  }

  EXPECT(tally_flush(handle), TALLY_STATUS_OK);
  EXPECT(tally_close(handle), TALLY_STATUS_OK);
  EXPECT(tally_close(handle), TALLY_STATUS_UNKNOWN_HANDLE);
  EXPECT(tally_record(handle, "task", "task_completed", NULL), TALLY_STATUS_UNKNOWN_HANDLE);

  if (failures > 0) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("ok\n");
  return 0;
}
