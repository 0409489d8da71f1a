"""scrapyd's tests are run by test_scrapyd_contract.py against a listener's address,
never collected from here (they would call 127.0.0.1:6800)."""
collect_ignore_glob = ["integration_tests/*"]
