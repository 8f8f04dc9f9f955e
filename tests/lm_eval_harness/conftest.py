"""The fixtures of `harness_fixtures`, for every test in this folder. (The folder is not named `lm_eval`: on the tests'
`pythonpath` it would be importable as a namespace package `lm_eval` wherever the harness is not installed.)"""

from harness_fixtures import _offline, offline_env, task_dir, tiny_model_dir  # noqa: F401
