"""Every primitive the compiled graphs use → the platforms its MindSpore 2.7.0 documentation lists under
"Supported Platforms" (None: documented for no platform). Written by `python -m ms_ptuning.native.audit
--add_new` from the installed MindSpore's docstrings (the API pages' text); checked by tests/test_graph_audit.py."""

OP_PLATFORMS = {
}
