"""dramatiq actors. The broker module is imported first; each area's actors follow.

Start standalone workers with:  dramatiq app.actors --processes N --threads T
"""

import app.runtime.broker  # noqa: F401  (sets the global broker before any actor is declared)
from app.actors import (  # noqa: F401
    acme,
    agents,
    discovery,
    imports,
    notifications,
    persons,
    pki,
    reports,
    system,
)
