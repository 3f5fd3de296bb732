"""Process runtime: the dramatiq broker, the app context for actors, heartbeats, the
embedded worker and the scheduler loop. Imports point one way: embedded -> broker ->
context -> heartbeat; scheduler -> heartbeat."""
