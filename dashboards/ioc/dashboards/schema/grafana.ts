/**
 * The types every generated dashboard is checked against (tests/unit/test_grafana_schema.py).
 *
 * They are @grafana/schema's own (the exact version pinned in package.json), read as JSON:
 * a saved dashboard holds an enum's value ("lastNotNull", "absolute"), never the TypeScript
 * enum itself, so `Json<T>` turns each string enum into the union of its values and leaves
 * everything else as it is. Optional and required keys stay as the schema has them, and an
 * object literal typed this way still rejects any key the schema does not know.
 *
 * One correction: the classic schema types a panel's `links` as dashboard links
 * (`DashboardLink`, with asDropdown, icon, tags...), but Grafana stores panel links as data
 * links ({title, url, targetBlank}); Grafana's own code marks that type as wrong
 * (grafana/grafana#81560) and schema v2 fixed it with `DataLink` (#97441), used here.
 */
import type {
  Dashboard as SchemaDashboard,
  Panel as SchemaPanel,
  RowPanel as SchemaRowPanel,
} from '@grafana/schema';
import type { DataLink } from '@grafana/schema/apis/dashboard.grafana.app/v2';

/** A schema type as it appears in JSON: string enums become their values. */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

export type Panel = Json<Omit<SchemaPanel, 'links'> & { links?: DataLink[] }>;
export type RowPanel = Json<Omit<SchemaRowPanel, 'panels'> & { panels: Panel[] }>;
export type Dashboard = Json<Omit<SchemaDashboard, 'panels'>> & { panels?: Array<Panel | RowPanel> };

/** A panel type without a custom field config (stat, geomap...): `custom` must stay empty. */
export type NoCustomFieldConfig = Record<string, never>;
