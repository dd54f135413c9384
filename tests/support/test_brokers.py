"""The broker fixture starts a real Mosquitto that accepts MQTT v5 connections."""

import paho.mqtt.client as mqtt


def test_mosquitto_fixture_accepts_an_mqtt5_client(mosquitto):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert client.connect(mosquitto.host, mosquitto.port, 10) == mqtt.MQTT_ERR_SUCCESS
    client.disconnect()
