# kafka_app.py: a Kafka source, which roo-python refuses at set-up (python_errors.sh).
import wallaroo


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(bs):
    return bs


@wallaroo.encoder
def encode(data):
    return data


def application_setup(args):
    ab = wallaroo.ApplicationBuilder("kafka")
    ab.new_pipeline("in", wallaroo.KafkaSourceConfig("topic", [("127.0.0.1", "9092")], "Warn",
                                                     decode))
    ab.to_sink(wallaroo.TCPSinkConfig("127.0.0.1", "7002", encode))
    return ab.build()
