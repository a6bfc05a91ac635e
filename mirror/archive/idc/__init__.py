"""NCI Imaging Data Commons as a source (issue #10)."""
