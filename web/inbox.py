"""Placeholder blueprint 'inbox' (being written)."""
from flask import Blueprint

bp = Blueprint("inbox", __name__)
