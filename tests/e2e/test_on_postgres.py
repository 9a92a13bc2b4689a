"""The stateful agent families' end-to-end tests again, on PostgreSQL: the same test
functions as `test_assistants.py`, `test_assistants_stream.py`, `test_vector_stores.py` and
`test_responses_file_search.py` (imported here, so they are one suite), served by a Cinder
whose store is a throwaway PostgreSQL cluster instead of the embedded SQLite. This module's
`server`, `client` and `http` fixtures replace the session's for them."""

import shutil
import tempfile

import httpx
import openai
import pytest

import test_replicas
from conftest import DEFAULT_STORAGE, REQUEST_TIMEOUT_S, own_server
from test_assistants import (  # noqa: F401 (collected by pytest from here)
    test_a_function_call_round_trip_with_the_polling_helpers,
    test_a_run_answers_in_the_thread_through_create_and_poll,
    test_a_run_with_a_json_schema_answers_valid_json,
    test_bad_settings_are_a_400_naming_the_parameter,
    test_bad_thread_messages_are_a_400_naming_the_parameter,
    test_create_and_run_poll_and_cancel,
    test_listing_walks_every_page_newest_first,
    test_raw_http_shapes,
    test_runs_refuse_what_is_not_built_by_name,
    test_the_assistants_api_through_the_sdk,
    test_threads_and_messages_through_the_sdk,
)
from test_assistants_stream import (  # noqa: F401
    test_a_function_call_streams_to_requires_action_and_outputs_stream_the_rest,
    test_a_streamed_run_cancelled_from_elsewhere_ends_cancelled,
    test_create_and_run_stream_starts_with_the_thread,
    test_raw_framing_names_every_event_and_ends_with_done,
    test_runs_stream_with_an_event_handler,
)
from test_responses_file_search import (  # noqa: F401
    test_a_background_response_searches_and_its_output_continues,
    test_a_response_searches_ranks_and_cites_the_file_that_answers,
)
from test_vector_stores import (  # noqa: F401
    store,
    test_a_file_search_run_ranks_and_cites_the_file_that_answers,
    test_a_question_finds_the_document_that_answers_it,
    test_attachments_and_an_inline_store_are_stored_then_searched,
    test_attributes_filter_the_search,
    test_bad_searches_are_refused_by_name,
    test_bad_stores_are_refused_by_name,
    test_files_list_by_status_and_page,
    test_pdfs_are_read_other_formats_fail_with_openais_codes_and_removal_takes_the_chunks,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def server():
    blobs = tempfile.mkdtemp(prefix="cinder-on-pg-blobs-")
    try:
        with test_replicas.postgres() as url:
            with own_server("cinder-on-pg-", {DEFAULT_STORAGE: f'dir = "{blobs}"\nurl = "{url}"'}) as srv:
                yield srv
    finally:
        shutil.rmtree(blobs, ignore_errors=True)


@pytest.fixture(scope="module")
def client(server):
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-anything", max_retries=0, timeout=REQUEST_TIMEOUT_S)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


def test_this_suite_runs_on_postgres(server):
    assert "Postgres" in server.log()
