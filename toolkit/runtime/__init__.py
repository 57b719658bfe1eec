"""What runs on instances and in Lambda: the on-instance agent (``agent/``, shipped as a zipapp),
the interruption handler (``interruption/``, shipped as the Lambda package) and their one contract
(``notice.py``: ids, tags, windows). Standard library only but for boto3 in the handler; nothing here
imports the rest of spotkit (pyproject.toml's import-linter contract)."""
