"""`digital-finance stream`: micro-batches from Kafka (and Event Hubs), MQTT (and IoT Hub)
and a landing folder, each through the batch pipeline, exactly once.

The truth of where a stream stands is in the tables: every batch's plan rows in
`_system/batches` hold, per source partition, the positions it covers. A feed is positioned
from there on start and on every partition assignment (`feed`); the records it hands over
become one batch through `runs.intake.StreamIntake`, which drops what another writer took
meanwhile. Broker-side offsets (Kafka's consumer-group commits) are kept for monitoring
only. Records are written to the spool before their batch is claimed (`lakehouse.spool`),
so whichever writer comes next can finish a batch whose writer died.
"""
