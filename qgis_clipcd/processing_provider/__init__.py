"""The Processing provider ``clipcd`` and its algorithm ``clipcd:detect_change``."""
