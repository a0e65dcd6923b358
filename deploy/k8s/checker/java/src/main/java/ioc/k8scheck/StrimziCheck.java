package ioc.k8scheck;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.BeanDescription;
import com.fasterxml.jackson.databind.DeserializationConfig;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MappingIterator;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.deser.BeanDeserializerBuilder;
import com.fasterxml.jackson.databind.deser.BeanDeserializerModifier;
import com.fasterxml.jackson.databind.module.SimpleModule;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.strimzi.api.kafka.model.kafka.Kafka;
import io.strimzi.api.kafka.model.nodepool.KafkaNodePool;
import io.strimzi.api.kafka.model.topic.KafkaTopic;
import io.strimzi.api.kafka.model.user.KafkaUser;
import java.io.File;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Decodes Strimzi custom resources strictly into the model classes of {@code io.strimzi:api}.
 *
 * <p>Strimzi's classes (and fabric8's ObjectMeta) keep unknown fields in an
 * {@code @JsonAnySetter} map, so FAIL_ON_UNKNOWN_PROPERTIES alone would accept any typo: the
 * modifier below removes every any-setter and "ignore unknown" flag, so an unknown field fails
 * the decode as it would on an API server with strict field validation.
 *
 * <p>Usage: {@code StrimziCheck FILE.yaml...}; one JSON line per YAML document on stdout, the
 * same shape as the Go checker's: file, index, apiVersion, kind, name, status ("ok",
 * "invalid", "unknown-kind") and errors.
 */
public final class StrimziCheck {
    private static final String API = "kafka.strimzi.io/v1";
    private static final Map<String, Class<?>> KINDS =
            Map.of(
                    "Kafka", Kafka.class,
                    "KafkaNodePool", KafkaNodePool.class,
                    "KafkaTopic", KafkaTopic.class,
                    "KafkaUser", KafkaUser.class);

    private StrimziCheck() {}

    static ObjectMapper strictMapper() {
        SimpleModule strict = new SimpleModule("strict");
        strict.setDeserializerModifier(
                new BeanDeserializerModifier() {
                    @Override
                    public BeanDeserializerBuilder updateBuilder(
                            DeserializationConfig config,
                            BeanDescription description,
                            BeanDeserializerBuilder builder) {
                        builder.setAnySetter(null);
                        builder.setIgnoreUnknownProperties(false);
                        return builder;
                    }
                });
        ObjectMapper mapper = new ObjectMapper(new YAMLFactory());
        mapper.registerModule(strict);
        mapper.enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);
        mapper.enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES);
        mapper.enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY);
        mapper.enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);
        return mapper;
    }

    public static void main(String[] args) throws Exception {
        ObjectMapper mapper = strictMapper();
        ObjectMapper json = new ObjectMapper();
        for (String path : args) {
            int index = 0;
            try (MappingIterator<JsonNode> docs =
                    mapper.readerFor(JsonNode.class).readValues(new File(path))) {
                while (docs.hasNext()) {
                    JsonNode doc = docs.next();
                    if (doc == null || doc.isNull() || doc.isMissingNode()) {
                        continue;
                    }
                    ObjectNode out = json.createObjectNode();
                    out.put("file", path);
                    out.put("index", index++);
                    out.put("apiVersion", doc.path("apiVersion").asText());
                    out.put("kind", doc.path("kind").asText());
                    out.put("name", doc.path("metadata").path("name").asText());
                    List<String> errors = new ArrayList<>();
                    Class<?> type = KINDS.get(doc.path("kind").asText());
                    String status;
                    if (type == null || !API.equals(doc.path("apiVersion").asText())) {
                        status = "unknown-kind";
                    } else {
                        try {
                            mapper.treeToValue(doc, type);
                            status = "ok";
                        } catch (Exception e) {
                            status = "invalid";
                            errors.add(e.getMessage().replace('\n', ' '));
                        }
                    }
                    out.put("status", status);
                    out.set("errors", json.valueToTree(errors));
                    System.out.println(json.writeValueAsString(out));
                }
            }
        }
    }
}
