//! Arrow IPC in `FlightData` messages, both ways, for `DoExchange`.
//!
//! Reading is hostile-input safe: arrow-ipc's decoder trusts a message's buffer offsets,
//! lengths and row counts (it slices, allocates and unwraps on them), so each record batch
//! message is checked against its body before it is decoded, and a malformed one is an
//! `INVALID_ARGUMENT` status. Writing sends one message per batch, whatever its size,
//! and a message for a batch of no rows too (arrow-flight's encoder drops those).

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Once};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow::ipc::{MessageHeader, reader, root_as_message};
use arrow_flight::{FlightData, SchemaAsIpc};
use tonic::Status;

/// Rows a batch may declare beyond what its body could hold at one bit a row: columns
/// of the `null` type have no buffers, so their length is not bounded by the body.
const ROWS_WITHOUT_BODY: u64 = 1 << 20;

/// Decodes the messages of one stream: a schema, then dictionaries and record batches.
#[derive(Debug, Default)]
pub struct Decoder {
    schema: Option<SchemaRef>,
    dictionaries: HashMap<i64, ArrayRef>,
}

impl Decoder {
    /// The next batch of the stream, or `None` for a message that carries none (the
    /// schema, a dictionary).
    pub fn decode(&mut self, data: &FlightData) -> Result<Option<RecordBatch>, Status> {
        let bad = |m: String| Status::invalid_argument(format!("malformed Arrow IPC message: {m}"));
        let message = root_as_message(&data.data_header).map_err(|e| bad(e.to_string()))?;
        let body = Buffer::from(data.data_body.as_ref());
        match message.header_type() {
            MessageHeader::Schema => {
                let schema = message
                    .header_as_schema()
                    .ok_or_else(|| bad("no schema".into()))?;
                let schema = quietly(|| arrow::ipc::convert::fb_to_schema(schema))
                    .map_err(|()| bad("the schema cannot be read".into()))?;
                self.schema = Some(Arc::new(schema));
                Ok(None)
            }
            MessageHeader::RecordBatch => {
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| bad("no record batch".into()))?;
                check_body(batch, body.len()).map_err(bad)?;
                let schema = self.schema()?;
                let decoded = quietly(|| {
                    reader::read_record_batch(
                        &body,
                        batch,
                        Arc::clone(&schema),
                        &self.dictionaries,
                        None,
                        &message.version(),
                    )
                });
                match decoded {
                    Ok(Ok(batch)) => Ok(Some(batch)),
                    Ok(Err(e)) => Err(bad(e.to_string())),
                    Err(()) => Err(bad("the record batch cannot be read".into())),
                }
            }
            MessageHeader::DictionaryBatch => {
                let dictionary = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| bad("no dictionary batch".into()))?;
                if let Some(batch) = dictionary.data() {
                    check_body(batch, body.len()).map_err(bad)?;
                }
                let schema = self.schema()?;
                let read = quietly(|| {
                    reader::read_dictionary(
                        &body,
                        dictionary,
                        &schema,
                        &mut self.dictionaries,
                        &message.version(),
                    )
                });
                match read {
                    Ok(Ok(())) => Ok(None),
                    Ok(Err(e)) => Err(bad(e.to_string())),
                    Err(()) => Err(bad("the dictionary batch cannot be read".into())),
                }
            }
            other => Err(bad(format!("unexpected message type {other:?}"))),
        }
    }

    fn schema(&self) -> Result<SchemaRef, Status> {
        self.schema.clone().ok_or_else(|| {
            Status::invalid_argument("a record batch came before the stream's schema")
        })
    }
}

/// Checks what the decoder would trust: counts are not negative, every buffer lies
/// inside the body, and the row counts could be held by it.
fn check_body(batch: arrow::ipc::RecordBatch<'_>, body_len: usize) -> Result<(), String> {
    let body = body_len as u64;
    let max_rows = body.saturating_mul(8).saturating_add(ROWS_WITHOUT_BODY);
    let rows = |n: i64, what: &str| match u64::try_from(n) {
        Ok(n) if n <= max_rows => Ok(()),
        _ => Err(format!(
            "{what} of {n} rows does not fit a body of {body} bytes"
        )),
    };
    rows(batch.length(), "a batch")?;
    for node in batch.nodes().into_iter().flatten() {
        rows(node.length(), "a column")?;
        if node.null_count() < 0 || node.null_count() > node.length() {
            return Err(format!(
                "a column of {} rows has {} nulls",
                node.length(),
                node.null_count()
            ));
        }
    }
    for buffer in batch.buffers().into_iter().flatten() {
        let end = u64::try_from(buffer.offset())
            .ok()
            .zip(u64::try_from(buffer.length()).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        if end.is_none_or(|end| end > body) {
            return Err(format!(
                "a buffer at offset {} of {} bytes lies outside the body of {body} bytes",
                buffer.offset(),
                buffer.length()
            ));
        }
    }
    Ok(())
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs a decoder step that may panic on input the checks above do not cover
/// (arrow-ipc's schema conversion unwraps); a panic becomes `Err(())`, and the panic
/// hook stays silent for it (a client's bad message is no server bug to log).
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                default(info);
            }
        }));
    });
    QUIET.set(true);
    let result = catch_unwind(AssertUnwindSafe(f)).map_err(|_| ());
    QUIET.set(false);
    result
}

/// Encodes the answers of one stream: the schema first, then one message per batch.
#[derive(Debug)]
pub struct Encoder {
    generator: IpcDataGenerator,
    dictionaries: DictionaryTracker,
    options: IpcWriteOptions,
    context: IpcWriteContext,
}

impl Encoder {
    /// An encoder for batches of `schema`, and the schema's message.
    pub fn new(schema: &Schema) -> (Self, FlightData) {
        let options = IpcWriteOptions::default();
        let message = SchemaAsIpc::new(schema, &options).into();
        let encoder = Self {
            generator: IpcDataGenerator::default(),
            dictionaries: DictionaryTracker::new(false),
            options,
            context: IpcWriteContext::default(),
        };
        (encoder, message)
    }

    /// The messages of one batch: its dictionaries (none for result types), then it.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<FlightData>, Status> {
        let (dictionaries, batch) = self
            .generator
            .encode(
                batch,
                &mut self.dictionaries,
                &self.options,
                &mut self.context,
            )
            .map_err(|e| Status::internal(format!("cannot encode an answer: {e}")))?;
        Ok(dictionaries
            .into_iter()
            .chain([batch])
            .map(FlightData::from)
            .collect())
    }
}
