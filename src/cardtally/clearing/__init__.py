"""Day end: business days, reconciliation, clearing files, merchant settlement, look-up."""
