"""mindnlp must patch transformers before any test module imports transformers (a test file run on its own
would otherwise get the unpatched library), so the backend is imported before the tests are collected."""

import ms_ptuning.backend  # noqa: F401
