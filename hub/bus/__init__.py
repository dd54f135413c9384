"""The bus: the hub's only importer of paho.

    consumer.py    Consumer: lanes, a bounded hand-over, the writer thread, ack after commit,
                   feed publishing (hub.ingest plugs in decode and commit)
    mqttclient.py  BufferedClient: buffered reads, a lean QoS 1 path, bulk acknowledgements
    publisher.py   a QoS 1 publisher that waits for each PUBACK (commands, configs, flags)
    subscriber.py  a plain subscriber for watchers (the demo's feed view)
    broker.py      the embedded broker (amqtt) for one machine
"""
