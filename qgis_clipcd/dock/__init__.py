"""The dock widget: the analyst's form, the run button, the engine panel and diagnostics."""
