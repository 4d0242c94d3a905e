"""Model files in and out: a finished run exported to ship, a published ChangeCLIP checkpoint imported."""
