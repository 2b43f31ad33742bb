// golden_cases: runs the golden vectors (proto/testdata/, format in its README) through the C++
// client's typed API.
//
//   golden_cases <proto/testdata folder> <host:port>
//
// For each case it builds the request from the case's `input` with the typed structs
// (AdvantageRequest, LossRequest, ParametersRequest) and, where the client has a ToProto for it,
// compares it with the golden request file (as a message, MessageDifferencer, and as
// deterministic bytes); then it calls the typed Client method (ListModels and GetModel take no
// request struct: the test reads their bytes on the wire through a recording proxy, as it does
// for every case) and prints one JSON line:
//   {"name": ..., "message_equal": bool, "bytes_equal": bool, "answer": {...}}
// (the two flags only for cases with a ToProto)
// where `answer` has the shape of the case's `expect` (status; the fields, tensors as
// {"dtype", "shape", "values"}, model descriptions in the proto's names). The Python test
// (tests/clients/test_cpp_client.py) compares the answers with the golden numbers. Exit status 0
// when every case ran (whatever it answered), 2 on a usage or file error.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include "advantage/client.h"

namespace {

namespace v1 = advantage::v1;
using google::protobuf::ListValue;
using google::protobuf::Message;
using google::protobuf::Struct;
using google::protobuf::Value;

// ---- reading the case ------------------------------------------------------------------------

const Value& At(const Struct& object, const std::string& key) {
  const auto found = object.fields().find(key);
  if (found == object.fields().end()) throw std::invalid_argument("missing key '" + key + "'");
  return found->second;
}

bool Has(const Struct& object, const std::string& key) { return object.fields().count(key) > 0; }

std::string Str(const Struct& object, const std::string& key, const std::string& fallback = "") {
  return Has(object, key) ? At(object, key).string_value() : fallback;
}

advantage::Shape ShapeOf(const ListValue& list) {
  advantage::Shape shape;
  for (const Value& d : list.values()) shape.push_back(static_cast<int64_t>(d.number_value()));
  return shape;
}

// A typed tensor {"dtype", "shape", "values"} as the client's own encoding makes it.
v1::Tensor Typed(const Struct& typed) {
  const std::string dtype = At(typed, "dtype").string_value();
  const advantage::Shape shape = ShapeOf(At(typed, "shape").list_value());
  const auto& values = At(typed, "values").list_value().values();
  if (dtype == "float32") {
    std::vector<float> out;
    for (const Value& v : values) out.push_back(static_cast<float>(v.number_value()));
    return advantage::Tensor::Encode(out, shape);
  }
  if (dtype == "float64") {
    std::vector<double> out;
    for (const Value& v : values) out.push_back(v.number_value());
    return advantage::Tensor::Encode(out, shape);
  }
  if (dtype == "bool") {
    std::vector<bool> out;
    for (const Value& v : values) out.push_back(v.bool_value());
    return advantage::Tensor::Encode(out, shape);
  }
  if (dtype == "int64") {
    std::vector<int64_t> out;
    for (const Value& v : values) out.push_back(static_cast<int64_t>(v.number_value()));
    return advantage::Tensor::Encode(out, shape);
  }
  throw std::invalid_argument("unknown dtype '" + dtype + "'");
}

std::map<std::string, v1::Tensor> TypedMap(const Struct& object) {
  std::map<std::string, v1::Tensor> out;
  for (const auto& [key, value] : object.fields()) out[key] = Typed(value.struct_value());
  return out;
}

void ReadTrajectory(const Struct& input, advantage::TrajectoryFields* out) {
  out->form = Str(input, "form", "full") == "compact" ? advantage::Form::kCompact
                                                      : advantage::Form::kFull;
  const Struct& trajectory = At(input, "trajectory").struct_value();
  for (const auto& [name, value] : trajectory.fields()) {
    if (name == "observation") {
      out->observation = TypedMap(value.struct_value());
      continue;
    }
    if (name == "next_observation") {
      out->next_observation = TypedMap(value.struct_value());
      continue;
    }
    const v1::Tensor tensor = Typed(value.struct_value());
    if (name == "reward") out->reward = tensor;
    else if (name == "done") out->done = tensor;
    else if (name == "terminated") out->terminated = tensor;
    else if (name == "state_value") out->state_value = tensor;
    else if (name == "next_state_value") out->next_state_value = tensor;
    else if (name == "action") out->action = tensor;
    else if (name == "sample_log_prob") out->sample_log_prob = tensor;
    else if (name == "log_prob") out->log_prob = tensor;
    else throw std::invalid_argument("unknown trajectory field '" + name + "'");
  }
}

// The estimator's name and knobs ("" and none when the input has no estimator).
std::string ReadEstimator(const Struct& input, advantage::EstimatorKnobs* knobs) {
  if (!Has(input, "estimator")) return "";
  const Struct& estimator = At(input, "estimator").struct_value();
  for (const auto& [knob, value] : At(estimator, "knobs").struct_value().fields()) {
    const double x = value.number_value();
    if (knob == "gamma") knobs->gamma = x;
    else if (knob == "lmbda") knobs->lmbda = x;
    else if (knob == "rho_thresh") knobs->rho_thresh = x;
    else if (knob == "c_thresh") knobs->c_thresh = x;
    else if (knob == "rho_pg_thresh") knobs->rho_pg_thresh = x;
    else throw std::invalid_argument("unknown estimator knob '" + knob + "'");
  }
  return At(estimator, "kind").string_value();
}

advantage::LossKnobs ReadLossKnobs(const Struct& knobs) {
  advantage::LossKnobs out;
  for (const auto& [knob, value] : knobs.fields()) {
    const double x = value.number_value();
    if (knob == "entropy_bonus") out.entropy_bonus = value.bool_value();
    else if (knob == "normalize_advantage") out.normalize_advantage = value.bool_value();
    else if (knob == "loss_critic_type") {
      v1::CriticLoss type;
      if (!v1::CriticLoss_Parse(value.string_value(), &type)) {
        throw std::invalid_argument("unknown loss_critic_type " + value.string_value());
      }
      out.loss_critic_type = type;
    } else if (knob == "entropy_coeff") out.entropy_coeff = x;
    else if (knob == "critic_coeff") out.critic_coeff = x;
    else if (knob == "clip_value") out.clip_value = x;
    else if (knob == "clip_epsilon") out.clip_epsilon = x;
    else if (knob == "clip_epsilon_low") out.clip_epsilon_low = x;
    else if (knob == "clip_epsilon_high") out.clip_epsilon_high = x;
    else if (knob == "dtarg") out.dtarg = x;
    else if (knob == "beta") out.beta = x;
    else if (knob == "increment") out.increment = x;
    else if (knob == "decrement") out.decrement = x;
    else if (knob == "gamma") out.gamma = x;
    else if (knob == "lmbda") out.lmbda = x;
    else if (knob == "rho_thresh") out.rho_thresh = x;
    else if (knob == "c_thresh") out.c_thresh = x;
    else if (knob == "rho_pg_thresh") out.rho_pg_thresh = x;
    else throw std::invalid_argument("unknown loss knob '" + knob + "'");
  }
  return out;
}

// ---- writing the answer ----------------------------------------------------------------------

Value Number(double x) {
  Value v;
  v.set_number_value(x);
  return v;
}

Value Text(const std::string& s) {
  Value v;
  v.set_string_value(s);
  return v;
}

Value Flag(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}

Value List(const std::vector<Value>& items) {
  Value v;
  v.mutable_list_value();  // an empty list is still a list
  for (const Value& item : items) *v.mutable_list_value()->add_values() = item;
  return v;
}

Value ShapeValue(const advantage::Shape& shape) {
  std::vector<Value> dims;
  for (int64_t d : shape) dims.push_back(Number(static_cast<double>(d)));
  return List(dims);
}

std::string DTypeWord(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32: return "float32";
    case v1::DTYPE_FLOAT64: return "float64";
    case v1::DTYPE_BOOL: return "bool";
    case v1::DTYPE_INT64: return "int64";
    default: return v1::DType_Name(dtype);
  }
}

Value TypedValue(v1::DType dtype, const advantage::Shape& shape, const std::vector<double>& values) {
  Value out;
  Struct* s = out.mutable_struct_value();
  (*s->mutable_fields())["dtype"] = Text(DTypeWord(dtype));
  (*s->mutable_fields())["shape"] = ShapeValue(shape);
  std::vector<Value> items;
  for (double x : values) items.push_back(Number(x));
  (*s->mutable_fields())["values"] = List(items);
  return out;
}

Value ModelValue(const advantage::ModelInfo& m) {
  Value out;
  auto& f = *out.mutable_struct_value()->mutable_fields();
  f["name"] = Text(m.name);
  std::vector<Value> inputs;
  for (const advantage::InputSpec& spec : m.inputs) {
    Value input;
    auto& g = *input.mutable_struct_value()->mutable_fields();
    g["name"] = Text(spec.name);
    g["shape"] = ShapeValue(spec.shape);
    g["dtype"] = Text(v1::DType_Name(spec.dtype));
    inputs.push_back(input);
  }
  f["inputs"] = List(inputs);
  f["has_value_network"] = Flag(m.has_value_network);
  f["has_actor_network"] = Flag(m.has_actor_network);
  Value action;
  auto& a = *action.mutable_struct_value()->mutable_fields();
  a["distribution"] = Text(v1::Distribution_Name(m.action.distribution));
  a["shape"] = ShapeValue(m.action.shape);
  a["dtype"] = Text(v1::DType_Name(m.action.dtype));
  a["num_actions"] = Number(static_cast<double>(m.action.num_actions));
  f["action"] = action;
  f["parameter_version"] = Number(static_cast<double>(m.parameter_version));
  Value defaults;
  (*defaults.mutable_struct_value()->mutable_fields())["gamma"] = Number(m.gamma);
  (*defaults.mutable_struct_value()->mutable_fields())["lmbda"] = Number(m.lmbda);
  f["defaults"] = defaults;
  f["parameter_dtype"] = Text(v1::DType_Name(m.parameter_dtype));
  return out;
}

// ---- one case --------------------------------------------------------------------------------

std::string Deterministic(const Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

// Builds the case's request (into `built`) and runs it; fills `answer` (fields of expect).
void Run(const advantage::Client& client, const std::string& rpc, const Struct& input,
         std::unique_ptr<Message>* built, Struct* answer) {
  auto& f = *answer->mutable_fields();
  f["status"] = Text("OK");
  if (rpc == "ComputeAdvantage") {
    advantage::AdvantageRequest request;
    request.model_name = Str(input, "model");
    ReadTrajectory(input, &request);
    request.estimator = ReadEstimator(input, &request);
    *built = std::make_unique<v1::ComputeAdvantageRequest>(advantage::ToProto(request));
    const advantage::AdvantageResult r = client.ComputeAdvantage(request);
    f["model_name"] = Text(r.model_name);
    f["parameter_version"] = Number(static_cast<double>(r.parameter_version));
    Value tensors;
    auto& t = *tensors.mutable_struct_value()->mutable_fields();
    t["advantage"] = TypedValue(r.dtype, r.shape, r.advantage);
    t["value_target"] = TypedValue(r.dtype, r.shape, r.value_target);
    std::vector<Value> absent;
    if (r.state_value.empty()) absent.push_back(Text("state_value"));
    else t["state_value"] = TypedValue(r.dtype, r.shape, r.state_value);
    if (r.next_state_value.empty()) absent.push_back(Text("next_state_value"));
    else t["next_state_value"] = TypedValue(r.dtype, r.shape, r.next_state_value);
    f["tensors"] = tensors;
    f["absent"] = List(absent);
  } else if (rpc == "ComputeLoss") {
    advantage::LossRequest request;
    request.model_name = Str(input, "model");
    ReadTrajectory(input, &request);
    request.estimator = ReadEstimator(input, &request);
    const Struct& loss = At(input, "loss").struct_value();
    request.loss = At(loss, "kind").string_value();
    request.loss_knobs = ReadLossKnobs(At(loss, "knobs").struct_value());
    if (Has(input, "behaviour_distribution")) {
      request.behaviour_distribution = TypedMap(At(input, "behaviour_distribution").struct_value());
    }
    request.apply_update = Has(input, "apply_update") && At(input, "apply_update").bool_value();
    if (Has(input, "expected_parameter_version")) {
      request.expected_parameter_version =
          static_cast<int64_t>(At(input, "expected_parameter_version").number_value());
    }
    *built = std::make_unique<v1::ComputeLossRequest>(advantage::ToProto(request));
    const advantage::LossResult r = client.ComputeLoss(request);
    f["model_name"] = Text(r.model_name);
    f["parameter_version"] = Number(static_cast<double>(r.parameter_version));
    f["updated"] = Flag(r.updated);
    f["loss"] = Number(r.loss);
    Value metrics;
    for (const auto& [name, value] : r.metrics) {
      (*metrics.mutable_struct_value()->mutable_fields())[name] = Number(value);
    }
    f["metrics"] = metrics;
  } else if (rpc == "ListModels") {
    std::vector<Value> models;
    for (const advantage::ModelInfo& m : client.ListModels()) models.push_back(ModelValue(m));
    f["models"] = List(models);
  } else if (rpc == "GetModel") {
    f["model"] = ModelValue(client.GetModel(Str(input, "model")));
  } else if (rpc == "GetParameters") {
    advantage::ParametersRequest request;
    request.model_name = Str(input, "model");
    for (const Value& prefix : At(input, "prefixes").list_value().values()) {
      request.prefixes.push_back(prefix.string_value());
    }
    request.max_chunk_bytes = static_cast<int64_t>(At(input, "max_chunk_bytes").number_value());
    *built = std::make_unique<v1::GetParametersRequest>(advantage::ToProto(request));
    const advantage::Parameters p = client.GetParameters(request);
    f["parameter_version"] = Number(static_cast<double>(p.parameter_version));
    Value parameters;
    for (const auto& [name, tensor] : p.tensors) {
      (*parameters.mutable_struct_value()->mutable_fields())[name] =
          TypedValue(tensor.dtype(), advantage::Tensor::ShapeOf(tensor),
                     advantage::Tensor::DecodeAsDouble(tensor));
    }
    f["parameters"] = parameters;
  } else {
    throw std::invalid_argument("unknown rpc '" + rpc + "'");
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + path);
  std::ostringstream content;
  content << file.rdbuf();
  return content.str();
}

std::unique_ptr<Message> EmptyRequest(const std::string& rpc) {
  if (rpc == "ComputeAdvantage") return std::make_unique<v1::ComputeAdvantageRequest>();
  if (rpc == "ComputeLoss") return std::make_unique<v1::ComputeLossRequest>();
  if (rpc == "ListModels") return std::make_unique<v1::ListModelsRequest>();
  if (rpc == "GetModel") return std::make_unique<v1::GetModelRequest>();
  if (rpc == "GetParameters") return std::make_unique<v1::GetParametersRequest>();
  throw std::invalid_argument("unknown rpc '" + rpc + "'");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: golden_cases <proto/testdata folder> <host:port>\n";
    return 2;
  }
  const std::string folder = argv[1];
  Struct document;
  try {
    const auto parsed = google::protobuf::util::JsonStringToMessage(ReadAll(folder + "/cases.json"),
                                                                    &document);
    if (!parsed.ok()) throw std::runtime_error("cases.json: " + parsed.ToString());
    if (At(document, "format").number_value() != 1) throw std::runtime_error("format is not 1");
  } catch (const std::exception& error) {
    std::cerr << error.what() << "\n";
    return 2;
  }
  const advantage::Client client(argv[2]);
  for (const Value& item : At(document, "cases").list_value().values()) {
    const Struct& c = item.struct_value();
    const std::string name = At(c, "name").string_value();
    const std::string rpc = At(c, "rpc").string_value();
    Struct line;
    auto& out = *line.mutable_fields();
    out["name"] = Text(name);
    std::unique_ptr<Message> built;
    Value answer;
    try {
      Run(client, rpc, At(c, "input").struct_value(), &built, answer.mutable_struct_value());
    } catch (const advantage::Error& error) {
      auto& f = *answer.mutable_struct_value()->mutable_fields();
      f.clear();
      f["status"] = Text(error.code_name());
      f["message"] = Text(error.message());
    } catch (const std::exception& error) {  // refused by the client: a failure of the case
      auto& f = *answer.mutable_struct_value()->mutable_fields();
      f.clear();
      f["status"] = Text("CLIENT_ERROR");
      f["message"] = Text(error.what());
    }
    out["answer"] = answer;
    if (built) {
      const std::string golden = ReadAll(folder + "/" + At(c, "request").string_value());
      std::unique_ptr<Message> expected = EmptyRequest(rpc);
      out["message_equal"] = Flag(expected->ParseFromString(golden) &&
                                  google::protobuf::util::MessageDifferencer::Equals(*built, *expected));
      out["bytes_equal"] = Flag(Deterministic(*built) == golden);
    }
    std::string json;
    google::protobuf::util::MessageToJsonString(line, &json);
    std::cout << json << "\n";
  }
  return 0;
}
