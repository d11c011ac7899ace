"""Server-rendered pages (placeholder until the templates land)."""

from flask import Blueprint

bp = Blueprint("pages", __name__)
