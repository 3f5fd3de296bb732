"""The scanning agent: a process in a network zone that needs only broker credentials, its
signing key and its own allow-list (no database, no app secrets). It consumes its own
queue ``scan.<name>``, runs the scanner engine (app.scan) on shard messages, and sends what
it finds, signed, to the central queue ``agents``. Nothing here touches the database.

Start it with ``flask --app wsgi agent run NAME --broker URL --key FILE --allow CIDR ...``
or, without Flask, ``dramatiq app.agent.process --queues scan.NAME`` with CW_AGENT_NAME,
CW_AGENT_BROKER, CW_AGENT_KEY and CW_AGENT_ALLOW in the environment (docs/discovery.md).
"""
