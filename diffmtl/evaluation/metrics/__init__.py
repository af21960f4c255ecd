"""Sample-quality metrics (FID, Inception Score, precision/recall) and their feature networks."""
