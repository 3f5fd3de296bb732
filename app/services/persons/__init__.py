"""End users of client certificates: persons (by hand and CSV), invitations with one-time
codes, the portal's registration, self-service revoke and renew, and the portal mails."""
