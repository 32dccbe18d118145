"""Flows are loaded once per process and shared, until a file under them changes."""

from __future__ import annotations

import os
from pathlib import Path

from helpline import create_app
from helpline.conversation.lint import shared_library
from tests.factories import edit, make_settings


def test_every_app_in_a_process_shares_one_loaded_library(tmp_path, redis_server, flows):
    first = create_app(make_settings(tmp_path / "a", redis_server, flows_dir=flows))
    second = create_app(make_settings(tmp_path / "b", redis_server, flows_dir=flows))

    assert first.extensions["helpline"].library is second.extensions["helpline"].library
    first.extensions["redis"].close()
    second.extensions["redis"].close()


def test_a_changed_file_is_loaded_afresh(flows: Path):
    before = shared_library(flows)
    content = flows / "content" / "en.yaml"
    reprompt = before.content.messages["en"]["voice.reprompt"]
    edit(content, "voice.reprompt: ", "voice.reprompt: Sorry, one more time. ")
    stat = content.stat()  # a coarse clock could leave the time as it was: move it on
    os.utime(content, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    after = shared_library(flows)

    assert after is not before
    assert after.content.messages["en"]["voice.reprompt"] == f"Sorry, one more time. {reprompt}"
    assert shared_library(flows) is after
