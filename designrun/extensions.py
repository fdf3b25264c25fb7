"""Flask extensions, created unbound and bound in create_app()."""

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from designrun.models.base import Base

# expire_on_commit=False: services return rows after committing; re-reading them would cost a
# query (and, on SQLite, a new read transaction) for nothing.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
# Sessions are our own server-side rows (auth/sessions.py), resolved per request by a
# request_loader; Flask's signed session cookie is never used, so it must not be touched.
login_manager.session_protection = None
