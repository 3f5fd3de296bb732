"""Infrastructure every domain uses: background jobs, the scheduler pass and recovery,
outgoing mail. No use case lives here."""
