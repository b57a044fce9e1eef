"""Harness for running real frameworks (Celery, Nameko, oslo.messaging) on kombu_like.

Each framework gets its own virtual environment (their pins clash with each other), built
once and cached by :mod:`.venvs`; worker and client processes run in it with the
``kombu`` import alias installed, and tests talk to the clients through :mod:`.driver`.
"""
