"""Real-time triggers: an accepted event -> a message within a second, under the lists' own rules.

* :mod:`crm.triggers.spec`: the trigger YAML (``campaigns/triggers/<id>.yaml``), validated on
  load like a campaign, and its condition over the event and the player's online profile.
* :mod:`crm.triggers.worker`: claims the firings the API queued with each accepted event
  (:mod:`crm.store.triggers`), checks and queues the message with the one send path
  (:func:`crm.campaigns.online.check_and_queue`), records what became of each firing.
"""
