"""What several test modules share: plain helpers, imported from here (the fixtures are in
``tests/conftest.py``)."""
