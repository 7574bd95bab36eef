"""The session runtime: peer connections of this worker, their records, and the
control bus that lets any worker reach any session."""
